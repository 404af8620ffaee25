from lit_clf.run.entry import main

if __name__ == "__main__":
    main()
